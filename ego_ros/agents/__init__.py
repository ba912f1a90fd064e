"""`ego-ros mcp`: the robot's personal concepts as Model Context Protocol tools for language-model agents.

Two backends serve the same tools: `engine_backend` (the engine in-process, on image files or
base64 images) and `ros_backend` (a client of a running `ego_node`). `server` defines the tools and
transports, `cli` the command line.
"""
