"""The recipe: its schema (pydantic), reading a recipe file, and the starter recipe of
``edgekit init``."""
