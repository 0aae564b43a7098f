h = <<EOF
no end
