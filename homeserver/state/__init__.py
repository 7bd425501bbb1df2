"""Authorization rules and state resolution (v1, v2, v2.1). Pure code: no I/O."""
