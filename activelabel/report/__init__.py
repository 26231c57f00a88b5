"""Reports: one self-contained HTML file per experiment or campaign, read from storage only.

``curves`` holds the math (labels to a target, area under the learning curve, the paired
test), ``figures`` the matplotlib plots, ``html`` the page, ``build`` puts them together.
"""

from activelabel.report.build import ReportInfo, write_report

__all__ = ["ReportInfo", "write_report"]
