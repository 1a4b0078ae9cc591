//! The local RPC (DESIGN §6): the method dispatch and the unix-socket server.

pub mod envelope;
pub mod methods;
pub mod server;
