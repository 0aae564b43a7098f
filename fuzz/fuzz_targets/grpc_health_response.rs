#![no_main]
//! gRPC health check responses: body bytes → frame → HealthCheckResponse.
libfuzzer_sys::fuzz_target!(|data: &[u8]| tribune::checks::grpc_wire::fuzzing(data));
