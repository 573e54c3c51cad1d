#Requires -Version 5.1
#Requires -RunAsAdministrator
<#
.SYNOPSIS
    Removes the airlockd Windows service; with -Purge also its state and configuration.

.DESCRIPTION
    First runs `airlock uninstall --yes` (when airlock.exe is there) so the device CA leaves the
    machine's trust stores and the proxy settings setup made are restored, then stops and deletes the
    service. Without -Purge the state folder (device CA, journal, policy ratchet) is kept, as an upgrade
    or a reinstall needs it; -Purge deletes C:\ProgramData\Airlock, the managed Config folder included.

.PARAMETER InstallDir
    Where airlock.exe is (default: C:\Program Files\Airlock).

.PARAMETER DataDir
    The service's state directory (default: C:\ProgramData\Airlock).

.PARAMETER Purge
    Also delete the state directory.

.EXAMPLE
    powershell.exe -NoProfile -ExecutionPolicy Bypass -File .\uninstall-service.ps1 -Purge
#>
[CmdletBinding()]
param(
    [string]$InstallDir = (Join-Path $env:ProgramFiles 'Airlock'),
    [string]$DataDir = (Join-Path $env:ProgramData 'Airlock'),
    [switch]$Purge
)

Set-StrictMode -Version Latest
$ErrorActionPreference = 'Stop'

$ServiceName = 'airlockd'
$Cli = Join-Path $InstallDir 'airlock.exe'

if (Test-Path -LiteralPath $Cli) {
    & $Cli --state-dir $DataDir.TrimEnd('\') uninstall --yes
    if ($LASTEXITCODE -ne 0) {
        Write-Warning "airlock uninstall exited with $($LASTEXITCODE): run it again by hand to remove the CA from the trust stores"
    }
}

$service = Get-Service -Name $ServiceName -ErrorAction SilentlyContinue
if ($null -ne $service) {
    if ($service.Status -ne 'Stopped') {
        Stop-Service -Name $ServiceName -Force
    }
    & sc.exe delete $ServiceName | Out-Null
    if ($LASTEXITCODE -ne 0) {
        throw "sc.exe delete $ServiceName failed with exit code $LASTEXITCODE"
    }
    Write-Host "removed the service '$ServiceName'"
} else {
    Write-Host "the service '$ServiceName' is not installed"
}

if ($Purge) {
    if (Test-Path -LiteralPath $DataDir) {
        Remove-Item -LiteralPath $DataDir -Recurse -Force
        Write-Host "deleted $DataDir"
    }
} else {
    Write-Host "kept $DataDir (device CA, journal, policy ratchet); -Purge deletes it"
}
