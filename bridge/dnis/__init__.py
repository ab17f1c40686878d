"""dnis"""
