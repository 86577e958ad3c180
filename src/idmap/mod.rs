//! Id mappings.
/// placeholder
pub struct IdMap;
