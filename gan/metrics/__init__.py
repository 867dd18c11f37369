"""Scoring generators: feature statistics, FID/KID/IS, references, memorisation, conditional scores."""
