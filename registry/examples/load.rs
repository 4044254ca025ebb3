//! Loads an image archive into a store and prints what it got, for poking at the store by
//! hand: `cargo run -p pelagos-registry --example load -- DATA_ROOT ARCHIVE`.

use registry::ImageStore;
use std::fs::File;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(root), Some(archive)) = (args.next(), args.next()) else {
        eprintln!("usage: load DATA_ROOT ARCHIVE");
        std::process::exit(2);
    };
    let store = ImageStore::open(&PathBuf::from(root))?;
    for image in store.load_archive(File::open(archive)?)? {
        for (tag, old) in &image.replaced {
            println!(
                "The image {} already exists, renaming the old one with ID {old} to empty string",
                tag.familiar()
            );
        }
        match image.tags.as_slice() {
            [] => println!("Loaded image ID: {}", image.id),
            tags => tags
                .iter()
                .for_each(|t| println!("Loaded image: {}", t.familiar())),
        }
        let record = store.resolve(&image.id.to_string())?;
        for dir in store.layer_dirs(&record)? {
            println!("  layer {}", dir.display());
        }
    }
    Ok(())
}
