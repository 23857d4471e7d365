"""AWS helpers. boto3 is imported only inside these modules, and only when called."""
