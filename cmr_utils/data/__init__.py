"""The corpora the pipeline reads: a Recipe1M-layout folder, the generated demo and synthetic corpora, given features, photos."""
