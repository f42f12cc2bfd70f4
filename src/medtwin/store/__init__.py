"""medtwin.store"""
