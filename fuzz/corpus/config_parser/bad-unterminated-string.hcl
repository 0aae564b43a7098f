node_name = "x
