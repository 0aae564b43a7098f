services = [{ name = "web", port = "eighty" }]
