//! The back-ends behind the ports.
