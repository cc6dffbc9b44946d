//! TF Serving's protobuf messages (from `vitrine-wire`) and the tonic
//! services `build.rs` generates over them from `wire/proto`. Shared by the
//! gRPC front end and the config readers; it imports nothing of the crate.

pub mod tensorflow {
    pub use vitrine_wire::proto::tensorflow::*;
    pub mod serving {
        pub use vitrine_wire::proto::tensorflow::serving::*;
        // Generated code: its lints are tonic-build's business.
        #[allow(clippy::all, clippy::pedantic)]
        mod services {
            include!(concat!(env!("OUT_DIR"), "/tensorflow.serving.rs"));
        }
        pub use services::*;
    }
}
