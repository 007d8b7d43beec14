"""Generated protobuf and gRPC code of sheep.runtime.v1 (by scripts/gen-proto.sh);
only `api/` imports it."""
