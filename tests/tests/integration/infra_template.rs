//! The deployed shapes match the ones the code creates locally.
