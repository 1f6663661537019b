"""The token service's logic, kept apart from the Functions bindings in function_app.py.

Modules are small and single-purpose; importing this package costs nothing, so the
cold path pays only for what a request actually needs.
"""
