"""The operator's tool: the `cinesync` CLI, the launcher of every process, and a gRPC client."""
