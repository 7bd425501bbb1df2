"""Push rules, the evaluator, notification counts and pushers.

Spec: https://spec.matrix.org/v1.19/client-server-api/#push-notifications
"""
