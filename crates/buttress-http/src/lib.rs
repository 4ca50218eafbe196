//! HTTP and gRPC support for buttress (in progress).
