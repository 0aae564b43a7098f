ports {
  http 8500
}
