"""medtwin.twin"""
