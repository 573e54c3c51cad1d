#Requires -Version 5.1
<#
.SYNOPSIS
    Intune Win32 app uninstall script for Airlock: removes every installed version of the MSI (found
    by its UpgradeCode, which never changes), whose own custom action runs `airlock uninstall --yes`
    first. The state in C:\ProgramData\Airlock is kept (packaging\windows\uninstall-service.ps1
    -Purge deletes it).
#>
Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

# packaging/wix/main.wxs's UpgradeCode (checked by scripts/lint-packaging.sh).
$UpgradeCode = '{BCC00C6D-C15F-4F16-94BA-4CA7DB1B1A56}'

$installer = New-Object -ComObject WindowsInstaller.Installer
$products = @($installer.RelatedProducts($UpgradeCode))
if ($products.Count -eq 0) {
    Write-Output 'Airlock is not installed'
    exit 0
}
$exitCode = 0
foreach ($product in $products) {
    $process = Start-Process -FilePath 'msiexec.exe' -ArgumentList @('/x', $product, '/qn', '/norestart') -Wait -PassThru
    if ($process.ExitCode -notin @(0, 3010, 1605)) {
        $exitCode = $process.ExitCode
    }
}
exit $exitCode
