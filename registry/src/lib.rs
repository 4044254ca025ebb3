//! Images: references, the local content store, layer unpacking, load/save (and, later,
//! pull/push over the OCI distribution protocol).

pub mod error_kind;
pub use error_kind::ErrorKind;
