"""gRPC API: the only layer that sees generated protobuf types."""
