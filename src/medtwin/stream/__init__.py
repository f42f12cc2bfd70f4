"""medtwin.stream"""
