package model
allow = true
