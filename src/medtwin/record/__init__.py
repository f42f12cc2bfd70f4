"""medtwin.record"""
