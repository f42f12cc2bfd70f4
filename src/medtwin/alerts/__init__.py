"""medtwin.alerts"""
