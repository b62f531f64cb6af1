"""`composition_interfaces.srv.LoadNode` shape only (see the package docstring)."""


class LoadNode:
    class Request:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("composable nodes are not available in the standalone venv (stand-in composition_interfaces)")

    class Response:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("composable nodes are not available in the standalone venv (stand-in composition_interfaces)")
