//! Checking (being written).
