"""End-to-end encryption support: device keys, one-time and fallback keys, cross-signing,
device-list tracking, to-device messages and server-side key backup.

Spec: https://spec.matrix.org/v1.19/client-server-api/#end-to-end-encryption
"""
