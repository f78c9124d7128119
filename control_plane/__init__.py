"""gRPC control plane: FAISS retrieval, ranking by the Triton ensemble, model version switching.

Serving imports numpy, faiss, grpc and tritonclient, never torch.
"""
