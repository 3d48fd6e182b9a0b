"""HTTP handlers, one module per area. They parse, call a service function and shape the answer."""
