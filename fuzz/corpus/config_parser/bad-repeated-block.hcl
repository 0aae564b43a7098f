ports { http = 1 }
ports { dns = 2 }
