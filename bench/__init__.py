"""`make bench`: scale runs of the nightly DAG, side by side with a notebook baseline and a floor."""
