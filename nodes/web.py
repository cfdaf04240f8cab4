"""Registers the web UI's HTTP routes (``remaster/routes.py``) with ComfyUI's server. Defines no
nodes; outside ComfyUI importing it does nothing."""
from remaster import host, routes

host.register_routes(routes.make_routes())

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}
