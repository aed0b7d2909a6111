"""Floor 5: recipes, a whole training run as one YAML file (the files here), and the code that runs them."""
