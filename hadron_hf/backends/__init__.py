"""Model backends: each one adapts a vendor client to ``ChatModel`` and maps its errors to ours."""
