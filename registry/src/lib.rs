//! Images: references, the local content store, layer unpacking, load/save, and pull/push
//! over the OCI distribution protocol.

pub mod archive;
pub mod auth;
pub mod config;
pub mod digest;
pub mod error;
pub mod error_kind;
mod fsys;
pub mod platform;
pub mod reference;
pub mod settings;
pub mod store;
pub mod unpack;

pub use config::{Healthcheck, History, ImageConfig, RunConfig};
pub use digest::Digest;
pub use error::{Error, Result};
pub use error_kind::ErrorKind;
pub use platform::Platform;
pub use reference::Reference;
pub use settings::{Credentials, RegistrySettings};
pub use store::{
    ImageRecord, ImageStore, ImageUser, LoadedImage, NewImage, PullEvent, PullOptions, Pulled,
    PushEvent, Pushed, Removed,
};
