"""Result records (one JSON file per run) and the tables generated from them."""
