"""Running the notebooks: parameters, grids, up-to-date stamps, the kernel and the order of work."""
