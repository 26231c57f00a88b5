"""The ML side: datasets, the model, seeded training, stochastic prediction, metrics."""
