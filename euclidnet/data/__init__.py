"""Data: synthetic point clouds with normals (shapes), extended-XYZ datasets."""
