"""Pure pipeline model: parameters, expressions, conditions, steps and the pipeline graph."""
