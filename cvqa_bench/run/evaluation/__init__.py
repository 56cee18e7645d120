"""One stage's evaluation: generation, the cells of the matrix, cell reuse."""
