"""mixer"""
