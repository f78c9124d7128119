"""Contracts every role shares and nothing else: settings, the generated gRPC code (v1/), the
Triton model and tensor names, and the serving-bundle layout. It imports no other CineSync package."""
