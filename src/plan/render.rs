//! Plan renderers: text table, JSON, Graphviz dot. (Being written.)
