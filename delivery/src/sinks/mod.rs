//! One module per sink; the module name is the sink's `type` in a Setting and its metric
//! label.

pub mod phoenix;
