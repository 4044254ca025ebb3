//! Linux capabilities: Docker default set, add/drop resolution, applying them in the container.
