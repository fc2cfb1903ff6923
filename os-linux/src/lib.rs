//! rdk-os-linux: the OS traits on Linux.
#![deny(missing_docs)]
