package model
default allow = false
allow { input.device == "cpu" }
